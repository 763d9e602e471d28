"""Networks, data loaders, losses, distillers and the training loop."""
