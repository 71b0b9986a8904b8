"""Benchmarks that reproduce published MTL set-ups; each writes tables and a plot to a folder.

* ``multi_fashion(out_dir, quick=False, seeds=None, balancers=None)`` — every balancer on
  Multi-Fashion, Δm% vs single-task (issue 7.3);
* ``reviews(out_dir, quick=False, seeds=None, balancers=None)`` — text MTL on clothing
  reviews: single-task vs shared-bottom vs MMoE over a shared text CNN (issue 7.4).
"""

from mtlkit.bench._multi_fashion import multi_fashion
from mtlkit.bench._reviews import reviews

__all__ = ["multi_fashion", "reviews"]
