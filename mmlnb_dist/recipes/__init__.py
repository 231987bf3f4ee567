"""mmlnb_dist.recipes package."""
