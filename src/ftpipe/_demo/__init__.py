"""``python -m ftpipe demo``: threads, subinterpreters or processes? Measured on this machine.

    _cli.main(argv)                                     # the command line
      _runner.run_demo()
        _interpreters.configurations()                  # 3.13t, 3.13t gil=1, stock GIL builds...
        for each workload of the battery (_workloads.WORKLOADS), as _schedule allows:
            ftpipe.diagnose(fn, inputs, configurations=[...])
        for each configuration:
            python -m ftpipe._demo._pipeline            # one pipeline on thread / interpreter / process
        -> _model.DemoResult
      _table.format_result(result)                      # printed
      _table.to_dict(result), _report.write_report()    # demo.json, demo.html into --out

Modules import one way only, down this list: _workloads, _model, _interpreters,
_progress, _schedule, _pipeline, _runner, _table, _report, _cli.  Nothing is imported
here: the probe subprocesses, subinterpreters and worker processes that import
``ftpipe._demo._workloads`` by name should not load the rest of the demo.
"""
