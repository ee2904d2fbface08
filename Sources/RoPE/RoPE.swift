/// RoPE scaling math. See the files in this module.
public enum RoPE {}
