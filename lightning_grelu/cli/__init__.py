"""The suite's commands, one thin file each: parse the command line, call the library, map what went
wrong to an exit code (see the README's table). The science lives in the modules beside this package.

    train.py      grelu-train       train one run (Hydra app; -m for a Hydra multirun)
    eval.py       grelu-eval        score a checkpoint on data splits, as a run's summary does
    sweep.py      grelu-sweep       one Optuna sweep worker (Hydra app over sweep_conf/)
    reproduce.py  grelu-reproduce   run a paper table or figure's jobs and publish results/<target>/
    report.py     grelu-report      compare run records: tables, CSV, loss curves
    bench.py      grelu-bench       the suite's step time against a plain PyTorch loop
"""
