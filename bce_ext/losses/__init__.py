"""One module per loss, named after it (its op's name, bce_ext/_registry.py): its functional and
its torch.nn.Module. The package exports them (bce_ext/__init__.py); bce_ext.functional and
bce_ext.modules gather them from the registry."""
