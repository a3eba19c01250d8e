"""The search stage: architectures x hyperparameters inside a node-hour budget, with Optuna.

``space`` (what trials may be), ``budget`` (accounting and stopping) and
``pareto`` (the optimizeFor choice) are pure; ``study`` keeps the Optuna study in
shared storage, ``runner`` runs the workers' loop and summarises the study, and
``final`` fits the chosen configuration on train + validation.
"""
