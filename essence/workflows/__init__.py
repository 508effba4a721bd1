"""Uses of a direction built on the method: apply/sweep, blends, inversion, evaluation, comparison, import."""
