"""Which callables a pickle-based model file may import, and which are known to be dangerous.

A pickle runs code when it is loaded: every GLOBAL it imports can be called with arguments
of the file's choosing. The model scanner therefore accepts only callables that rebuild
plain data (NumPy arrays, SciPy sparse matrices, scikit-learn estimators, a few standard
containers). Anything else fails the gate; the callables below that run commands, open
files or sockets, import modules or evaluate code are reported as critical.
"""

from __future__ import annotations

import re

# Exact `module.name` callables that only rebuild data.
SAFE_GLOBALS: frozenset[str] = frozenset(
    {
        # standard containers and the reconstructors pickle itself emits
        *(
            f"{mod}.{name}"
            for mod in ("builtins", "__builtin__")
            for name in (
                "set",
                "frozenset",
                "slice",
                "complex",
                "bytearray",
                "bytes",
                "object",
                "dict",
                "list",
                "tuple",
                "int",
                "float",
                "bool",
                "str",
                "range",
            )
        ),
        "copyreg._reconstructor",
        "copy_reg._reconstructor",
        "_codecs.encode",
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.Counter",
        "collections.deque",
        "datetime.date",
        "datetime.datetime",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
        # NumPy arrays, scalars, dtypes and random states
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "numpy.ma.core._mareconstruct",
        "numpy.ma.core.MaskedArray",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64",
        "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
        "numpy.random.bit_generator.SeedSequence",
        # joblib's containers for the arrays it writes next to the pickle stream
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "joblib.numpy_pickle_compat.NDArrayWrapper",
        "joblib.numpy_pickle_compat.ZNDArrayWrapper",
        # scikit-learn helpers that are functions, not classes
        "sklearn.neighbors._ball_tree.newObj",
        "sklearn.neighbors._kd_tree.newObj",
        "sklearn.metrics._dist_metrics.newObj",
        # pandas frames kept in a model (feature names, reference data)
        "pandas.DataFrame",
        "pandas.Series",
        "pandas.Index",
        "pandas.RangeIndex",
        "pandas.core.frame.DataFrame",
        "pandas.core.series.Series",
        "pandas.core.internals.managers.BlockManager",
        "pandas.core.internals.managers.SingleBlockManager",
        "pandas.core.internals.blocks.new_block",
        "pandas._libs.internals._unpickle_block",
        "pandas.core.indexes.base._new_Index",
        "pandas.core.indexes.base.Index",
        "pandas.core.indexes.range.RangeIndex",
        # PyTorch tensors (the part of a torch zip's data.pkl that rebuilds tensors)
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch.Size",
        "torch.device",
    }
)

# NumPy scalar types and element-wise functions (FunctionTransformer keeps one).
_NUMPY_NAMES = frozenset(
    """
    bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64
    float128 longdouble complex64 complex128 str_ bytes_ datetime64 timedelta64 intc
    intp abs absolute sqrt square exp expm1 exp2 log log1p log2 log10 sin cos tan arcsin
    arccos arctan sinh cosh tanh arcsinh arccosh arctanh sign clip round floor ceil rint
    trunc negative reciprocal power cbrt maximum minimum mean median sum prod std var
    identity nan_to_num isnan isfinite
    """.split()  # noqa: SIM905 - a word list reads better than 70 lines
)
_SCIPY_SPARSE = re.compile(r"^(csr|csc|coo|bsr|dia|dok|lil)_(matrix|array)$")
_TORCH_STORAGE = re.compile(r"^[A-Za-z0-9]*Storage$")
# scikit-learn modules whose classes or functions are for tests or run programs.
_SKLEARN_DENIED = ("sklearn.utils._testing", "sklearn.externals", "sklearn.utils._show_versions")

# Known-dangerous modules (any callable in them) and single callables: CRITICAL.
_DANGEROUS_MODULES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "socket",
    "importlib",
    "sys",
    "pty",
    "shutil",
    "runpy",
    "code",
    "codeop",
    "ctypes",
    "multiprocessing",
    "asyncio",
    "signal",
    "webbrowser",
    "http",
    "urllib",
    "urllib2",
    "urllib3",
    "requests",
    "ftplib",
    "smtplib",
    "telnetlib",
    "ssl",
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "marshal",
    "shelve",
    "tempfile",
    "commands",
    "popen2",
    "pdb",
    "bdb",
    "timeit",
    "trace",
    "profile",
    "cProfile",
    "doctest",
    "pydoc",
    "venv",
    "ensurepip",
    "distutils",
    "setuptools",
    "pip",
    "imp",
    "zipimport",
    "_io",
    "io",
    "glob",
    "pathlib",
    "platform",
    "select",
    "selectors",
    "threading",
    "_thread",
    "mmap",
    "fcntl",
    "resource",
    "pwd",
    "grp",
    "gc",
    "inspect",
)
_DANGEROUS_CALLABLES = frozenset(
    {
        *(
            f"{mod}.{name}"
            for mod in ("builtins", "__builtin__")
            for name in (
                "eval",
                "exec",
                "execfile",
                "compile",
                "open",
                "file",
                "getattr",
                "setattr",
                "delattr",
                "__import__",
                "globals",
                "locals",
                "vars",
                "input",
                "breakpoint",
                "reload",
                "apply",
            )
        ),
        "operator.attrgetter",
        "operator.methodcaller",
        "functools.partial",
        "functools.reduce",
        "types.FunctionType",
        "types.CodeType",
        "types.LambdaType",
        "types.MethodType",
        "types.ModuleType",
        "numpy.load",
        "numpy.lib.npyio.load",
        "numpy.fromfile",
        "numpy.testing._private.utils.runstring",
        "numpy.core._ufunc_reconstruct",
        "numpy._core._ufunc_reconstruct",
        "joblib.load",
        "torch.load",
        "torch.storage._load_from_bytes",
        "torch.hub.load",
        "pandas.read_pickle",
        "pandas.io.pickle.read_pickle",
        "keras.models.load_model",
    }
)
# Where pickle records a callable under its implementation module, name the one people know.
_ALIASES = {"posix": "os", "nt": "os", "__builtin__": "builtins", "_io": "io"}


def display_name(qualified: str) -> str:
    """`posix.system` → `posix.system (os.system)`; other names unchanged."""
    module, _, name = qualified.rpartition(".")
    alias = _ALIASES.get(module)
    return f"{qualified} ({alias}.{name})" if alias else qualified


def is_dangerous(qualified: str) -> bool:
    """A callable that can run commands, reach the network, touch files or evaluate code."""
    if qualified in _DANGEROUS_CALLABLES:
        return True
    module = qualified.rpartition(".")[0]
    return any(
        mod in (qualified, module) or module.startswith(mod + ".") for mod in _DANGEROUS_MODULES
    )


def is_safe(qualified: str) -> bool:
    """A callable that only rebuilds data."""
    if is_dangerous(qualified):
        return False
    if qualified in SAFE_GLOBALS:
        return True
    module, _, name = qualified.rpartition(".")
    if not module or not name:
        return False
    if module == "numpy" and name in _NUMPY_NAMES:
        return True
    # Cython's pickle helpers: rebuild one extension type's fields after a layout check
    if name.startswith("__pyx_unpickle_") and module.split(".")[0] in ("numpy", "scipy", "sklearn"):
        return not module.startswith(_SKLEARN_DENIED)
    if module.startswith("scipy.sparse.") and _SCIPY_SPARSE.match(name):
        return True
    if module == "torch" and _TORCH_STORAGE.match(name):
        return True
    # scikit-learn classes (estimators, trees, losses, binners): a class name is CamelCase
    # or starts with an underscore and a capital; functions are not accepted wholesale.
    return (
        (module == "sklearn" or module.startswith("sklearn."))
        and not module.startswith(_SKLEARN_DENIED)
        and bool(re.match(r"^_?[A-Z]", name))
    )
