"""Shadow models: LiRA, RMIA and counterfactual memorization with K GPTs trained as one stack.

* :mod:`memlens.shadow.design`: the balanced (paired) keep matrix;
* :mod:`memlens.shadow.signals`: per-model, per-example signals from the shared scoring pass;
* :mod:`memlens.shadow.attacks`: LiRA (Carlini et al. 2022) and RMIA (Zarifzadeh et al. 2024);
* :mod:`memlens.shadow.counterfactual`: counterfactual memorization (Zhang et al. 2023);
* :mod:`memlens.shadow.train`: K shadow GPTs as batched stacks, resumable per stack;
* :mod:`memlens.shadow.recipe`: ``run_train``, ``run_attack``, ``run_memorization``.
"""
