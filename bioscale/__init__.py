"""bioscale: does this biologically plausible learning rule scale, and how fragile is it?"""
__version__ = "0.1.0"
