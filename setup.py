"""Package list only (everything else is in pyproject.toml).

pyproject's ``packages.find`` cannot add packages that live outside its folder, and the
configs must stay at the top level (``conf/``) while shipping inside the wheel as
``prunebench.conf`` (mapped by ``[tool.setuptools.package-dir]``), each config group
(``conf/model`` ...) a data-only subpackage.
"""

from setuptools import find_namespace_packages, setup

code = find_namespace_packages(include=["prunebench", "prunebench.*", "hydra_plugins", "hydra_plugins.*"])
conf = ["prunebench.conf", *(f"prunebench.conf.{p}" for p in find_namespace_packages(where="conf"))]
setup(packages=[*code, *conf])
