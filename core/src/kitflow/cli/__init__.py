"""Layer 5: the `kitflow` command line, with kit's verbs and flags."""
