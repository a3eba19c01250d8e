"""The contract between the trainer and the operator: one torch-free owner of every file they exchange.

Every arrow of AutoVision's path is a file in object storage, written by one
process and read by another. This package is the single definition of that
hand-off, imported by writers and readers alike:

* ``keys``: the storage key layout of datasets and runs;
* ``files``: pydantic models of each file exchanged (progress, import progress,
  the import report's summary, the model card);
* ``exit_codes``: what the trainer's exit status tells a Job;
* ``env``: the names of the ``AUTOVISION_*`` environment variables;
* ``trainer_args``: the trainer's command line, built by the operator and
  parsed by the trainer from the same definition.

Nothing here imports torch, kopf or an I/O library: the operator image and the
trainer image share it.
"""
