"""e4e and pSp inverters: feed-forward encoders from an aligned face photo to StyleGAN2 W+ latents.

``model`` holds the networks, ``checkpoint`` reads the official ``e4e_ffhq_encode.pt`` /
``psp_ffhq_encode.pt`` files safely and converts them to safetensors, ``assets.json`` lists the known
weight files. Heavy imports stay inside those modules: importing this package loads no torch.
"""
