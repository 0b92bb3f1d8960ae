"""Built-in plugins. Each subpackage is one plugin, written only against the public ``bridge`` API.

They are registered through the same path as third-party plugins: the plugin manager imports each
module named in :data:`BUILTIN_PLUGINS` and registers it under its short name.
"""

BUILTIN_PLUGINS: tuple[str, ...] = (
    "bridge.plugins.bridge_format",
    "bridge.plugins.file",
    "bridge.plugins.hl7v2",
    "bridge.plugins.fhir",
    "bridge.plugins.ncpdp",
    "bridge.plugins.telehealth_policy",
    "bridge.plugins.epic",
    "bridge.plugins.oracle_health",
    "bridge.plugins.athena",
)
