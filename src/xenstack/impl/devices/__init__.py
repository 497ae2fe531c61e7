"""VBDs and VIFs, and the operations each allows."""
