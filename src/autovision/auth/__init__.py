"""Who is calling, and may they: Kubernetes TokenReview plus SubjectAccessReview.

``reviews`` holds the pure decisions (what to ask, what an answer means, what is
remembered); ``kubernetes`` sends the reviews to the API server. The prediction
gateway (``autovision.serving.access``) and the console's guard
(``autovision.console.kubernetes_guard``) both check callers through them.
"""
