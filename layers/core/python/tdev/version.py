"""The release version, in one place: the wheel (pyproject reads it), the layer, `GET /health`,
`tdev --version` and every deployed function (its `Version` tag and `TDEV_VERSION`) all show this value.

Bumped by commitizen from the conventional commits since the last release (`cz bump --changelog`, see the
README's "Shipping"); never edited by hand.
"""

__version__ = "0.1.0"
