"""Built-in inverters: aligned photos -> W+ latents of a generator."""
