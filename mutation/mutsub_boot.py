"""Loaded at interpreter start (via mutsub.pth) in every python of /work/mut-venv.

Does nothing (imports nothing) unless MUTANT_UNDER_TEST is in the environment, i.e. unless this
interpreter is a subprocess started by a test that mutmut 3 is running. Then:

1. `python -m stress.worker` runs the mutated module as `__main__`, and mutmut's trampoline only
   activates a mutant when `func.__module__` equals the module part of MUTANT_UNDER_TEST
   ("stress.worker"). Without a fix, *no* worker.py mutant is ever active inside a worker process
   (they would all survive). So the decorator is wrapped to rename `__main__` to the real module
   name (`__main__.__spec__.name`, set by runpy for `-m`). Since the worker moved to
   `stress/worker/main.py` (imported by `stress/worker/__main__.py`) its functions carry their
   real module name anyway; the rename stays for any module run as `__main__`.
2. While mutmut collects stats (MUTANT_UNDER_TEST=stats) and the parent pytest plugin
   (mutsub.py) set MUTSUB_DIR: every mutated function this subprocess enters is appended at once
   to a per-process file (survives SIGKILL/segfault of the subprocess); mutsub.py merges the files
   into mutmut's per-test stats.
"""

import os

if "MUTANT_UNDER_TEST" in os.environ and not os.environ.get("MUTSUB_OFF"):
    try:
        import sys

        import mutmut.mutation.trampoline as _t

        def _main_name():
            spec = getattr(sys.modules.get("__main__"), "__spec__", None)
            return getattr(spec, "name", None)

        _orig_wrap = _t.wrap_in_trampoline

        def _wrap(mutants_dict, is_classmethod=False):
            deco = _orig_wrap(mutants_dict, is_classmethod)

            def _deco(func):
                if func.__module__ == "__main__" and _main_name():
                    func.__module__ = _main_name()
                return deco(func)

            return _deco

        _t.wrap_in_trampoline = _wrap

        if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("MUTSUB_DIR"):
            _orig_record = _t.record_trampoline_hit
            _seen = set()
            _path = os.path.join(os.environ["MUTSUB_DIR"], f"hits-{os.getpid()}.txt")

            def _fix(name):
                if name and name.startswith("__main__.") and _main_name():
                    return _main_name() + name[len("__main__") :]
                return name

            def _record(name, caller=None):
                name, caller = _fix(name), _fix(caller)
                key = (name, caller)
                if key not in _seen:
                    _seen.add(key)
                    with open(_path, "a") as f:
                        f.write(f"{name}\t{caller or ''}\n")
                return _orig_record(name, caller=caller)

            _t.record_trampoline_hit = _record
    except Exception as exc:  # never break the interpreter
        print(f"mutsub_boot: {exc!r}", file=sys.stderr)
