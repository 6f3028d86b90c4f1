"""Which imports a pickle may name: the allowlist of data and model classes, the denylist, and the verdict for each.

A security review reads this one page. Unknown means unsafe: anything not listed here as data or a known
model class is refused, and whole module roots that can touch the machine are named dangerous.
"""

from __future__ import annotations

import enum
import re

from qtsafe.models.pickle_scan import GlobalRef


class GlobalVerdict(enum.StrEnum):
    """How loading a pickle that imports this global should be judged."""

    DATA = "data"  # rebuilds plain data (containers, numpy arrays, dtypes)
    MODEL_LIBRARY = "model-library"  # a known model class whose setstate only restores data
    TORCH = "torch"  # torch internals: a torch object pickled (the engine cannot load it safely)
    DANGEROUS = "dangerous"  # runs commands, opens files, imports or evaluates code
    UNKNOWN = "unknown"  # anything else: importing it runs that module's code



# Exact names that only rebuild data. Prefix rules are deliberately avoided: numpy alone ships
# functions that run shell commands (numpy.distutils) or load further pickles.
_DATA_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.deque",
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "builtins.complex",
        "builtins.bytearray",
        "builtins.range",
        "builtins.list",
        "builtins.dict",
        "builtins.tuple",
        "builtins.int",
        "builtins.float",
        "builtins.str",
        "builtins.bytes",
        "builtins.bool",
        "builtins.object",
        "__builtin__.set",
        "__builtin__.frozenset",
        "__builtin__.object",
        "copyreg._reconstructor",
        "copy_reg._reconstructor",
        "copyreg.__newobj__",
        "_codecs.encode",
        "codecs.encode",
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "joblib.numpy_pickle.NumpyArrayWrapper",
        # Random generators (estimators keep a RandomState): rebuilt from a generator name and its state.
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64",
        "numpy.random._pcg64.PCG64DXSM",
        "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
        "numpy.random.bit_generator.SeedSequence",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    }
)
# numpy 2 pickles dtypes as numpy.dtypes.Float32DType and friends: classes, no side effects.
_DATA_PATTERNS = (re.compile(r"^numpy\.dtypes\.[A-Z][A-Za-z0-9]*DType$"),)

# Model classes whose unpickling restores a serialized booster / estimator state and nothing else.
_MODEL_GLOBALS = frozenset(
    {
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "xgboost.sklearn.XGBRanker",
        "xgboost.sklearn.XGBRFClassifier",
        "xgboost.sklearn.XGBRFRegressor",
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.sklearn.LGBMRanker",
    }
)
# scikit-learn estimators and transformers are classes (CamelCase) whose setstate only updates
# __dict__; sklearn's *functions* are not allowed, because some of them load files.
_MODEL_PATTERNS = (re.compile(r"^sklearn(\.[a-z_][a-z0-9_]*)+\.[A-Z][A-Za-z0-9]*$"),)

# Roots whose import alone means "this pickle can touch the machine".
_DANGEROUS_MODULES = frozenset(
    {
        "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "shutil", "socket", "importlib",
        "runpy", "pickle", "_pickle", "cPickle", "marshal", "ctypes", "pty", "code", "codeop", "commands",
        "webbrowser", "multiprocessing", "signal", "tempfile", "pathlib", "io", "_io", "urllib", "http",
        "ftplib", "smtplib", "telnetlib", "requests", "asyncio", "threading", "_thread", "types", "inspect",
        "operator", "functools", "pydoc", "timeit", "bdb", "pdb", "platform", "site", "glob", "zipimport",
        "dill", "cloudpickle", "joblib",
    }
)
# torch internals that load further files or bytes with a full unpickler.
_DANGEROUS_GLOBALS = frozenset(
    {
        "torch.storage._load_from_bytes", "torch.load", "torch.serialization.load", "torch.jit.load",
        "torch.hub.load", "torch.hub.load_state_dict_from_url", "torch.package.PackageImporter",
    }
)
_DANGEROUS_BUILTINS = frozenset(
    {
        "eval", "exec", "execfile", "compile", "open", "file", "__import__", "getattr", "setattr", "delattr",
        "globals", "locals", "vars", "input", "breakpoint", "help", "exit", "quit", "memoryview", "super",
        "type", "classmethod", "staticmethod", "property", "apply", "reload",
    }
)


def classify_global(ref: GlobalRef) -> GlobalVerdict:
    """Judge one import a pickle would perform. Unknown means unsafe: fail closed."""
    dotted = ref.dotted
    root = ref.module.split(".", 1)[0]
    if dotted in _DATA_GLOBALS or any(p.match(dotted) for p in _DATA_PATTERNS):
        return GlobalVerdict.DATA
    if dotted in _MODEL_GLOBALS or any(p.match(dotted) for p in _MODEL_PATTERNS):
        return GlobalVerdict.MODEL_LIBRARY
    if ref.module in ("builtins", "__builtin__"):
        return GlobalVerdict.DANGEROUS if ref.name in _DANGEROUS_BUILTINS else GlobalVerdict.UNKNOWN
    if root in _DANGEROUS_MODULES or dotted in _DANGEROUS_GLOBALS:
        return GlobalVerdict.DANGEROUS
    if root == "torch":
        return GlobalVerdict.TORCH
    return GlobalVerdict.UNKNOWN
