"""msstore under other libraries' APIs, each in a subpackage imported only when used (its
library is an optional extra): :mod:`msstore.integrations.langgraph`."""
