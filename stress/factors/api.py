"""Which MNN Python API a variant drives: the Session API or the Module API."""

from stress.factors.factor import DEFAULT_API, Factor

API = Factor(
    name="api",
    kind=str,
    default=DEFAULT_API,
    choices=("session", "module"),
    doc="MNN API under test: 'session' (Interpreter/createSession/runSession) "
    "or 'module' (nn.load_module_from_file/forward).",
)

FACTORS = (API,)
