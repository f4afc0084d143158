"""Tasks: what differs between, say, sentence classification and named-entity recognition.

Each task will live in a folder of its own here and be registered by name as a plug-in (how its
labelled data is read and validated, its labels encoded, its head, loss, metrics and predictions),
so that the training loop, ``compress``, ``serve`` and the CLI need not branch on task names.
Nothing is registered yet: ``token_classification`` so far only reads labelled NER data.
"""
