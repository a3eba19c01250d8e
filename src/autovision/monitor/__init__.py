"""Monitoring after deployment: drift of logged traffic from the model's test split (``drift``), the
reference it is compared with (``reference``) and the window of logged predictions (``window``)."""
