"""Family-wise thresholds for the statistical tests.

A test that compares ``n`` Monte Carlo estimates with their truth asserts ``|z| < z_family(n)``,
the threshold at which the chance of ANY false failure under a fresh key is ``p`` (Bonferroni,
two-sided). With ``dof`` the SE comes from ``dof + 1`` replicates, so z is Student-t distributed
and the threshold is the t quantile (bisection on the t CDF, written with jax.scipy's incomplete beta).
"""

from statistics import NormalDist

FAMILY_P = 1e-4


def z_family(n: int, p: float = FAMILY_P, dof: int | None = None) -> float:
    q = 1.0 - p / (2 * n)
    if dof is None:
        return NormalDist().inv_cdf(q)
    from jax.scipy.special import betainc

    def cdf(t):  # Student-t CDF for t >= 0
        return 1.0 - 0.5 * float(betainc(dof / 2.0, 0.5, dof / (dof + t * t)))

    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if cdf(mid) < q:
            lo = mid
        else:
            hi = mid
    return hi


if __name__ == "__main__":
    for n, dof in [(1, None), (3, None), (10, None), (6, 23), (3, 23)]:
        print(n, dof, round(z_family(n, dof=dof), 3))
