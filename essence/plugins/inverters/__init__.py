"""Built-in inverters: aligned photos -> W+ latents of a generator. Each folder here is one plugin."""
