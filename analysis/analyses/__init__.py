"""The report's analyses, one module each; `bioscale.analysis.registry` finds them and says how to add one."""
