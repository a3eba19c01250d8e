"""The search stage: architectures x hyperparameters inside a node-hour budget, with Optuna.

``space`` (what trials may be), ``budget`` (accounting and stopping) and
``pareto`` (the optimizeFor choice) are pure; ``study`` keeps the Optuna study in
shared storage. ``job`` is what a search works on (its settings, the dataset
version, the image cache), ``records`` reads trials and decides when to stop
(pure), ``worker`` runs the workers' loop, ``nodes`` joins several nodes' workers
into one search, ``summary`` reads the finished study, and ``final`` fits the
chosen configuration on train + validation.
"""
