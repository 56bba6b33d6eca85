"""The statistics the analyses compute from loaded studies: importances, effects, outcomes, stability, surrogates.

Pure functions and dataclasses over trials; no report, no files (the analyses in
`bioscale.analysis.analyses` compute with them and render). One module per kind of statistic.
"""
