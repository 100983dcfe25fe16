"""The ``thoughtmdp`` sub-commands, one thin module each."""
