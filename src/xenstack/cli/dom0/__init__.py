"""Dom0's tools, as plug-ins and ``xenstack shell`` find them on their ``PATH``.

``python3 -m xenstack.cli.dom0 TOOL ARGS...`` runs one (the wrappers in
``xenstack/plugins/dom0bin`` do so): ``xenstore-read``, ``-write``, ``-ls``, ``-list``,
``-rm``, ``-exists``, ``-chmod``, ``-watch`` (:mod:`.xenstore_tools`) and ``vhd-util``
(:mod:`.vhd_util`), each with its Xen options, output and exit status.
"""
