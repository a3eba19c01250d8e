"""Entry point of the trainer image: the import and search Jobs the operator creates.

It turns the operator's Job arguments into calls of the core (``autovision``);
storage location and credentials come from the environment, never from arguments.
"""
