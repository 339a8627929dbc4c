"""Which MNN Python API a variant drives: the Session API or the Module API."""

from stress.factors import Factor

API = Factor(
    name="api",
    kind=str,
    default="session",
    choices=("session", "module"),
    doc="MNN API under test: 'session' (Interpreter/createSession/runSession) "
    "or 'module' (nn.load_module_from_file/forward).",
)

FACTORS = (API,)
