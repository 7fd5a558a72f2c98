arm: faults fewer in generic [no_context | generic:bad_access]
