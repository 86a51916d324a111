"""The paper's evidence, reproduced: one script per figure (``python -m benchmarks.paper.<script> --help``).

``fig2_lipschitz_fit``, ``fig3_singular_values``, ``fig4_exact_vs_sn``, ``fig5_channel_sparsity``,
``eq9_gain``; ``python -m benchmarks.paper.all [--quick]`` runs them all. Each writes
``benchmarks/results/paper_<name>.{png,md,json}`` (``_quick`` suffix with ``--quick``).
"""
