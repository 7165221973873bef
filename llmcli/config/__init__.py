"""Settings: the YAML config file, the environment and the flags resolved into one frozen `Settings`.

Owns: where the config file is and how it is parsed (invalid YAML is a ConfigError with file:line),
provider presets, the precedence rule (flag > environment > config file > preset > default; the
scalar settings as one table, `settings.FIELDS`, a line per setting with its flag, variable, file
keys, default and type), the API-key lookup (flag > environment > api_key_cmd > stored key > config
file) and the stored keys of
`llmcli keys` (`keys`: the OS keyring through `keyring`, imported lazily, or a 0600 file), what
`config show` prints of each value and where it came from (secrets redacted), and the one rule for
what is secret (`secrets`: header names, URL passwords, echoed keys).

May import: errors, status.
"""
