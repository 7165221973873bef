"""Stored API keys (`llmcli keys`): in the OS keyring through the `keyring` package, else in a 0600 file.

A key is stored under a NAME — a provider's name (`openrouter`, or one from `providers:` in the config)
— and used for that provider when no flag, environment variable or `api_key_cmd` gives one (the lookup
order is in settings.resolve_settings). The keyring holds the secret under service "llmcli", user NAME.

Where no keyring backend is usable (headless Linux without a Secret Service: keyring's `fail` backend;
or only keyrings.alt's plain-text file, unless PYTHON_KEYRING_BACKEND chose it), the key goes to
`keys.json` in the data dir, mode 0600, with a warning saying so.

`keys-index.json` beside it lists each NAME and where its key lives, never a value: keyring has no
portable way to list entries, and reading the index (not importing keyring, which may talk to D-Bus)
is all a run does for a provider with no stored key, so a plain `ask` never loads keyring.
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional, Tuple

from ..errors import ConfigError

SERVICE = "llmcli"
INDEX_FILE = "keys-index.json"
FALLBACK_FILE = "keys.json"
KEYRING, FILE = "keyring", "file"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ConfigError(f"invalid key name {name!r}: use letters, digits, '.', '_' or '-' (a provider's name)")
    return name


def fallback_path(home: str) -> str:
    return os.path.join(home, FALLBACK_FILE)


def index_path(home: str) -> str:
    return os.path.join(home, INDEX_FILE)


# --------------------------------------------------------------------------------------------
# small private files


def _read_json(path: str) -> Dict[str, str]:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return {str(k): str(v) for k, v in data.items()}


def _write_json(path: str, data: Dict[str, str]) -> None:
    """Written whole to a new 0600 file, then renamed over the old one (never half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}")


# --------------------------------------------------------------------------------------------
# the keyring


def keyring_backend() -> Tuple[Optional[object], str]:
    """(keyring backend, its description) when one is usable, else (None, why not)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None, "the keyring package is not installed (pip install 'llmcli[keyring]')"
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # a broken backend configuration must not end the command
        return None, f"keyring failed to start: {exc}"
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if isinstance(backend, fail.Keyring) or name.startswith("keyring.backends.null"):
        return None, "no keyring backend is available (no Secret Service, KWallet or macOS/Windows keychain)"
    if getattr(backend, "backends", None) == []:
        return None, "no keyring backend is available"
    if name == "keyrings.alt.file.PlaintextKeyring" and not os.environ.get("PYTHON_KEYRING_BACKEND"):
        # Chosen only because nothing better exists: a plain-text file no stricter than llmcli's own.
        return None, "the only keyring backend is keyrings.alt's plain-text file"
    return backend, describe_backend(backend)


def describe_backend(backend) -> str:
    name = type(backend).__name__
    path = getattr(backend, "file_path", None)
    return f"keyring ({type(backend).__module__}.{name}{', ' + path if isinstance(path, str) else ''})"


# --------------------------------------------------------------------------------------------
# the operations


def set_key(name: str, value: str, home: str) -> Tuple[str, Optional[str]]:
    """Store `value` under `name`; returns (where, warning or None)."""
    check_name(name)
    if not value:
        raise ConfigError("the key is empty; nothing stored")
    backend, why = keyring_backend()
    where, warning = None, None
    if backend is not None:
        try:
            backend.set_password(SERVICE, name, value)
            where = KEYRING
        except Exception as exc:
            why = f"the keyring refused it ({type(exc).__name__}: {exc})"
    if where is None:
        path = fallback_path(home)
        stored = _read_json(path)
        stored[name] = value
        _write_json(path, stored)
        where = FILE
        warning = (f"{why}; the key is stored in {path} (mode 0600: only you can read it, "
                   "but it is plain text on the disk)")
    index = _read_json(index_path(home))
    old = index.get(name)
    index[name] = where
    _write_json(index_path(home), index)
    if old == FILE and where == KEYRING:
        _drop_from_file(name, home)
    elif old == KEYRING and where == FILE:
        _drop_from_keyring(name)
    return where, warning


def stored_key(name: Optional[str], home: str) -> Optional[Tuple[str, str]]:
    """(key, where) for `name`, or None. Imports keyring only when the index says the key is there."""
    if not name or not _NAME.match(name):
        return None
    where = _read_json(index_path(home)).get(name)
    if where == FILE:
        value = _read_json(fallback_path(home)).get(name)
        return (value, f"key file {fallback_path(home)}") if value else None
    if where == KEYRING:
        backend, why = keyring_backend()
        if backend is None:
            raise ConfigError(f"the key {name!r} is in the keyring, but {why}")
        try:
            value = backend.get_password(SERVICE, name)
        except Exception as exc:
            raise ConfigError(f"cannot read the key {name!r} from the keyring: {type(exc).__name__}: {exc}")
        return (value, describe_backend(backend)) if value else None
    return None


def delete_key(name: str, home: str) -> bool:
    """Remove `name` wherever it is; False if it was nowhere."""
    check_name(name)
    index = _read_json(index_path(home))
    found = index.pop(name, None) is not None
    found = _drop_from_file(name, home) or found
    if found:
        _drop_from_keyring(name)
        _write_json(index_path(home), index)
    return found


def list_keys(home: str) -> List[Tuple[str, str]]:
    """(name, where) for every stored key; keyring is not imported."""
    out = []
    for name, where in sorted(_read_json(index_path(home)).items()):
        out.append((name, f"key file {fallback_path(home)}" if where == FILE else "keyring"))
    return out


def _drop_from_file(name: str, home: str) -> bool:
    path = fallback_path(home)
    stored = _read_json(path)
    if name not in stored:
        return False
    del stored[name]
    _write_json(path, stored)
    return True


def _drop_from_keyring(name: str) -> None:
    backend, _ = keyring_backend()
    if backend is None:
        return
    try:
        backend.delete_password(SERVICE, name)
    except Exception:  # not there (PasswordDeleteError) or the backend is gone: nothing to remove
        pass
