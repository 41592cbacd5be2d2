"""LiverSeg dashboard: ``streamlit run app.py`` (or ``make run``)."""

import streamlit as st

st.set_page_config(page_title="LiverSeg", page_icon="🩺", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/segment.py", title="Segment", icon=":material/radiology:", default=True),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/models.py", title="Models", icon=":material/inventory_2:"),
    ]
)
navigation.run()
