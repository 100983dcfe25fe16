"""The package list of the one distribution: the core and the folders mapped into its namespace.

Every package below a folder is found, so a new subpackage is never left out of the wheel.
"""

from collections.abc import Iterator

from setuptools import find_packages, setup

FOLDERS = {
    "thoughtmdp": "thoughtmdp",
    "thoughtmdp.envs": "envs",
    "thoughtmdp.agents": "agents",
    "thoughtmdp.learners": "learners",
}


def packages() -> Iterator[str]:
    """Each mapped package and every package found below its folder."""
    for name, folder in FOLDERS.items():
        yield name
        yield from (f"{name}.{sub}" for sub in find_packages(folder))


setup(packages=list(packages()), package_dir=FOLDERS)
