"""spkit: a notebook-first research kit for prompting generative spoken language models.

The pipeline is a chain of small swappable parts (textlesslib style):

    audio -> features (MFCC / HuBERT, one layer) -> k-means units -> unit LM -> prompts

Each part lives in its own module; the notebooks in ``notebooks/`` only call into them.
"""

__version__ = "0.1.0"
