"""After deployment: what the logged predictions say. The review set of the least confident
(``review``); drift of logged traffic from the model's test split (``drift``), the reference it is
compared with (``reference``) and the window of logged predictions (``window``)."""
