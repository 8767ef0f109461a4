"""Co-op Cloud recipes and apps, compatible with abra.

envfile        app env files: parse; rewrite TYPE byte-exactly
apps           AppCatalog: the apps under <abra dir>/servers/<server>/<app>.env
versions       Version: `X.Y.Z+upstream` tags in semver order
repo           RecipeStore: mirror cache, versions, release notes, private checkouts
compose        deploy env, interpolated + merged compose, preflight facts
interpolation  `${VAR:-default}` substitution (env files and compose)
merge          compose overlay merging
gitcmd         git via GitPython with timeouts and room-safe failure reasons
"""

from coopbot.recipes.apps import App, AppCatalog
from coopbot.recipes.envfile import EnvFile, EnvFileError, parse_env_file, write_type_version
from coopbot.recipes.repo import Checkout, RecipeStore, RecipeVersion
from coopbot.recipes.versions import Version, newest, sorted_desc

__all__ = [
    "App",
    "AppCatalog",
    "Checkout",
    "EnvFile",
    "EnvFileError",
    "RecipeStore",
    "RecipeVersion",
    "Version",
    "newest",
    "parse_env_file",
    "sorted_desc",
    "write_type_version",
]
