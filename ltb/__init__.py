"""LTB, the Lab Topology Builder: one model of a lab, shared by the inventory, jobs and portal."""
