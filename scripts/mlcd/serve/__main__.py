"""`python -m mlcd.serve`: the image's entry point, configured by MLCD_* variables.

The same server as `mlcd serve`, without the CLI's imports (the image carries only the
server's dependencies). Exit codes as everywhere in mlcd: 2 bad input, 3 missing tool.

SageMaker starts a bring-your-own container as `docker run IMAGE serve`: the one argument
this entry point takes, and ignores (the server already listens on 8080).
"""

from __future__ import annotations

import os
import sys

# One BLAS thread per worker process: the workers already use every core.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["serve"]):
        sys.stderr.write(
            f"error: unexpected arguments {' '.join(args)[:200]!r}: the image takes none, or "
            "`serve` (SageMaker's container contract); configure it with MLCD_* variables\n"
        )
        return 2
    from mlcd.errors import MlcdError
    from mlcd.serve.server import serve
    from mlcd.serve.settings import from_env

    try:
        return serve(from_env())
    except MlcdError as exc:
        sys.stderr.write(exc.render() + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
