"""Other MNN releases: cached environments and bisection across them."""
