"""The `lnprobe` command line: one module per command group, each registering its commands on the app in
`core` (which also holds the consoles and maps errors to exit codes); options are generated from the
commands' config dataclasses (`options`). `--help` imports neither torch nor transformers: the commands
import the library where their work starts.

    core        the app, the consoles, main() (bad input: one line, exit 2; internal error: exit 1), run()
    options     typer options generated from a config dataclass
    models      params, regimes, sites, tiny, assemble, export
    data        data synth | verify | subset | fixture
    train       train, sweep
    probes      similarity, gradvar, lnshift, claims
    eval        eval
    miniature   demo, study
    report      runs, report
    pretrain    pretrain text | vision | backbones
"""

from lnprobe.cli.core import app, console, main, run

# isort: off
# the command groups register their commands on import, in this order (which is `lnprobe --help`'s)
from lnprobe.cli import models, data, train, probes, eval, miniature, pretrain, report  # noqa: F401
# isort: on

__all__ = ["app", "console", "main", "run"]
