"""GAN phase synthesis (pix2pix baseline of the paper): networks in `network`, training in `train`."""
