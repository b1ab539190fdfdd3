"""Kernel machines past memory: solvers that read a kernel a block of rows at a time.

``BlockedKernel`` serves a kernel from a ``.npy`` file (as ``widenet kernel`` writes it), an
array or a function computing rows on demand; ``conjugate_gradients`` solves
(K + ridge I) alpha = Y with a ``NystromPreconditioner``; ``gradient_flow`` gives the kernel
regime's predictions at time t by Lanczos; ``fit`` (and ``widenet fit``) goes from labels to
predictions. See docs/solvers.md.
"""

from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.cg import SolveResult, conjugate_gradients
from widenet.solvers.fit import FileFit, KernelFit, fit, fit_files
from widenet.solvers.flow import FlowResult, gradient_flow
from widenet.solvers.nystrom import NystromPreconditioner

__all__ = ["BlockedKernel", "FileFit", "FlowResult", "KernelFit", "NystromPreconditioner",
           "SolveResult", "conjugate_gradients", "fit", "fit_files", "gradient_flow"]
