"""The recipe's metrics, checked against hand-computed values (numpy only, no torch)."""
import math
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from firstlook_recipe import metrics  # noqa: E402


class Metrics(unittest.TestCase):
    def test_auc_perfect_inverted_and_ties(self):
        y = np.array([0, 0, 1, 1])
        self.assertEqual(metrics.auc(np.array([0.1, 0.2, 0.8, 0.9]), y), 1.0)
        self.assertEqual(metrics.auc(np.array([0.9, 0.8, 0.2, 0.1]), y), 0.0)
        # Every pair tied: 0.5.
        self.assertEqual(metrics.auc(np.array([0.5, 0.5, 0.5, 0.5]), y), 0.5)
        # One positive tied with one negative, the rest separated: (3 + 0.5) / 4.
        self.assertEqual(metrics.auc(np.array([0.1, 0.5, 0.5, 0.9]), y), 0.875)
        self.assertTrue(math.isnan(metrics.auc(np.array([0.1, 0.2]), np.array([1, 1]))))

    def test_wilson_interval_matches_the_formula(self):
        lo, hi = metrics.wilson(8, 10)
        self.assertAlmostEqual(lo, 0.4902, places=3)
        self.assertAlmostEqual(hi, 0.9433, places=3)
        self.assertEqual(metrics.wilson(0, 10)[0], 0.0)
        self.assertEqual(metrics.wilson(10, 10)[1], 1.0)

    def test_threshold_keeps_the_asked_sensitivity(self):
        rng = np.random.default_rng(0)
        s = rng.normal(size=1000)
        y = (rng.random(1000) < 0.3).astype(int)
        t = metrics.threshold_for_sensitivity(s, y, 0.9)
        sens = ((s > t) & (y == 1)).sum() / (y == 1).sum()
        self.assertGreaterEqual(sens, 0.9)
        self.assertLess(sens, 0.91)

    def test_threshold_for_sensitivity_is_exact_where_floating_point_is_not(self):
        # (1 - 0.9) * 20 = 1.9999999999999996: two of 20 positives may fall below.
        s = np.arange(40, dtype=float)
        y = np.array([0] * 20 + [1] * 20)
        t = metrics.threshold_for_sensitivity(s, y, 0.9)
        self.assertEqual(((s > t) & (y == 1)).sum(), 18)

    def test_hit_needs_the_peak_near_the_true_region(self):
        heat = np.zeros((8, 8))
        heat[2, 2] = 1.0
        mask = np.zeros((8, 8))
        mask[3, 3] = 1.0
        self.assertTrue(metrics.hit(heat, mask))
        mask[:] = 0
        mask[6, 6] = 1.0
        self.assertFalse(metrics.hit(heat, mask))


if __name__ == "__main__":
    unittest.main()
