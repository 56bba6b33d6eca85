"""The package layout: three stage folders at the top of the repository install under the one `bioscale` namespace.

Every package inside each folder is found (`find_packages`), so a new subpackage needs no entry here;
the rest of the metadata is in pyproject.toml.
"""

from setuptools import find_packages, setup

# Installed name -> source folder; nothing generic like `study` lands in site-packages.
FOLDERS = {"bioscale": "bioscale", "bioscale.spaces": "spaces", "bioscale.study": "study", "bioscale.analysis": "analysis"}

setup(package_dir=FOLDERS,
      packages=[f"{name}.{sub}" if sub else name for name, folder in FOLDERS.items() for sub in ("", *find_packages(folder))])
