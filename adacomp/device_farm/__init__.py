"""What a model costs on a device: emulated, host, remote-agent and Android devices (issue #3)."""
