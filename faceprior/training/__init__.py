"""Training data: the GFP-GAN degradation model and the face dataset."""
