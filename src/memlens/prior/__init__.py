"""Prior lab: when is memorization (zero training error) optimal?

Exact Bayesian linear theory of Cheng & Barber, "Is Memorization Helpful or Harmful? Prior
Information Sets the Threshold" (COLT 2026, arXiv:2602.09405), and a diagnostic for real data.

* :mod:`memlens.prior.linear`: exact finite-sample risks (conditional on ``X``) of min-norm,
  ridge (admissible negative penalties included), generalized ridge and Bayes estimators;
  ``J_pi``, ``V_pi``, ``lambda_Sigma``, Theorem 2's bounds and the corollaries' lower bounds;
  the whole ridge path from one SVD.
* :mod:`memlens.prior.asymptotic`: proportional-asymptotic limits from the Marchenko-Pastur /
  deterministic-equivalent fixed point for isotropic, aligned, misaligned and low-rank priors;
  the noise level at which the optimal ridge penalty changes sign.
* :mod:`memlens.prior.isotropic`: the isotropic closed forms the fixed point is checked against.
* :mod:`memlens.prior.table`: the whole table of ``memlens prior theory`` and its curves over
  noise levels and ridge penalties.
* :mod:`memlens.prior.montecarlo`: non-Gaussian priors (two-point, sparse; Gaussian mixtures)
  by Monte Carlo, with Tweedie's formula for the Bayes fit.
* :mod:`memlens.prior.loo`: exact leave-one-out of ridge over admissible penalties, from one SVD.
* :mod:`memlens.prior.empirical_bayes`: the maximum-likelihood fit of the prior to ``(X, y)``.
* :mod:`memlens.prior.diagnosis`: the answer to "noise, prior alignment, overparameterization"
  for a user's data, from the two above.
* :mod:`memlens.prior.files`: reading and checking the user's ``(X, y)`` files.
"""

from memlens.prior.asymptotic import (
    Population,
    bayes_limit,
    generalized_ridge_limit,
    make_population,
    minnorm_limit,
    optimal_ridge,
    ridge_limit,
    sign_change_noise,
)
from memlens.prior.diagnosis import Diagnosis, diagnose
from memlens.prior.files import load_xy
from memlens.prior.linear import (
    RidgePath,
    bayes_matrix,
    bayes_risk,
    excess_risk,
    finite_sample_theory,
    fisher_information,
    generalized_ridge_matrix,
    lambda_sigma,
    linear_risk,
    memorization_excess_bound,
    minnorm_matrix,
    overfitting_excess_bound,
    prior_variance,
    ridge_matrix,
    train_bounds,
)
from memlens.prior.loo import LooPath
from memlens.prior.montecarlo import (
    GaussianMixturePrior,
    gaussian_prior,
    simulate,
    sparse_prior,
    two_point_prior,
)
from memlens.prior.table import theory

__all__ = [
    "Diagnosis",
    "GaussianMixturePrior",
    "LooPath",
    "Population",
    "RidgePath",
    "bayes_limit",
    "bayes_matrix",
    "bayes_risk",
    "diagnose",
    "excess_risk",
    "finite_sample_theory",
    "fisher_information",
    "gaussian_prior",
    "generalized_ridge_limit",
    "generalized_ridge_matrix",
    "lambda_sigma",
    "linear_risk",
    "load_xy",
    "make_population",
    "memorization_excess_bound",
    "minnorm_limit",
    "minnorm_matrix",
    "optimal_ridge",
    "overfitting_excess_bound",
    "prior_variance",
    "ridge_limit",
    "ridge_matrix",
    "sign_change_noise",
    "simulate",
    "sparse_prior",
    "theory",
    "train_bounds",
    "two_point_prior",
]
